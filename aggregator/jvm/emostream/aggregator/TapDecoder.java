package emostream.aggregator;

import com.google.protobuf.CodedInputStream;
import com.google.protobuf.DescriptorProtos.FileDescriptorProto;
import com.google.protobuf.DescriptorProtos.FileDescriptorSet;
import com.google.protobuf.Descriptors.Descriptor;
import com.google.protobuf.Descriptors.DescriptorValidationException;
import com.google.protobuf.Descriptors.FieldDescriptor;
import com.google.protobuf.Descriptors.FileDescriptor;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.HashMap;
import java.util.Map;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF1;

/**
 * Decodes an ingest-topic record value into the three fields the aggregator
 * counts: match_id, emoji_type and the tap time in epoch milliseconds
 * (tapped_at, else received_at, else null). A time outside Timestamp's range
 * (years 1 to 9999, nanos 0 to 999,999,999) counts as no time: ingest never
 * writes one, and its milliseconds could overflow.
 *
 * <p>The message layout comes from the project's descriptor set, generated
 * from protos/ and packed into this jar as {@code emostream.pb}; nothing here
 * repeats a field number. A value that does not parse as an EmojiEvent with a
 * match and an emoji decodes to null, and the caller counts it as undecodable.
 *
 * <p>Register it from PySpark with
 * {@code spark.udf.registerJavaFunction(name, "emostream.aggregator.TapDecoder", RETURN_TYPE)}.
 */
public final class TapDecoder implements UDF1<byte[], Row> {
  private static final long serialVersionUID = 1L;

  /** The return type, as Spark SQL DDL. */
  public static final String RETURN_TYPE =
      "struct<match_id:string,emoji:string,tapped_ms:bigint>";

  private static final String DESCRIPTOR_SET = "/emostream.pb";
  private static final String MESSAGE = "emostream.v1.EmojiEvent";

  /** Wire tags of the fields read, from the descriptor set; once per JVM. */
  private static final class Fields {
    static final Descriptor EVENT = load();
    static final Descriptor TIMESTAMP = field(EVENT, "tapped_at").getMessageType();
    static final int MATCH_ID = tag(field(EVENT, "match_id"));
    static final int EMOJI_TYPE = tag(field(EVENT, "emoji_type"));
    static final int TAPPED_AT = tag(field(EVENT, "tapped_at"));
    static final int RECEIVED_AT = tag(field(EVENT, "received_at"));
    static final int SECONDS = tag(field(TIMESTAMP, "seconds"));
    static final int NANOS = tag(field(TIMESTAMP, "nanos"));
    /** Other string fields: not read, but a parser rejects bad UTF-8 in them. */
    static final int[] OTHER_STRINGS =
        EVENT.getFields().stream()
            .filter(f -> f.getType() == FieldDescriptor.Type.STRING)
            .mapToInt(TapDecoder::tag)
            .filter(t -> t != MATCH_ID && t != EMOJI_TYPE)
            .toArray();
  }

  @Override
  public Row call(byte[] value) {
    if (value == null) {
      return null;
    }
    try {
      return decode(CodedInputStream.newInstance(value));
    } catch (IOException e) {
      return null;  // not a valid message
    }
  }

  /**
   * Reads the three fields straight off the wire, skipping the others; the
   * same result as parsing the whole message, without building it.
   */
  private static Row decode(CodedInputStream in) throws IOException {
    String matchId = "";
    String emoji = "";
    long[] tapped = null;
    long[] received = null;
    for (int tag = in.readTag(); tag != 0; tag = in.readTag()) {
      if (tag == Fields.MATCH_ID) {
        matchId = in.readStringRequireUtf8();
      } else if (tag == Fields.EMOJI_TYPE) {
        emoji = in.readStringRequireUtf8();
      } else if (tag == Fields.TAPPED_AT) {
        tapped = readTimestamp(in, tapped);
      } else if (tag == Fields.RECEIVED_AT) {
        received = readTimestamp(in, received);
      } else if (isOtherString(tag)) {
        in.readStringRequireUtf8();
      } else if (!in.skipField(tag)) {
        throw new IOException("end-group tag outside a group");
      }
    }
    if (matchId.isEmpty() || emoji.isEmpty()) {
      return null;
    }
    long[] at = inRange(tapped) ? tapped : inRange(received) ? received : null;
    Long tappedMs = at == null ? null : at[0] * 1000L + at[1] / 1_000_000;
    return RowFactory.create(matchId, emoji, tappedMs);
  }

  /** 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in epoch seconds. */
  private static final long MIN_SECONDS = -62_135_596_800L;
  private static final long MAX_SECONDS = 253_402_300_799L;

  private static boolean inRange(long[] at) {
    return at != null
        && at[0] >= MIN_SECONDS
        && at[0] <= MAX_SECONDS
        && at[1] >= 0
        && at[1] <= 999_999_999;
  }

  private static boolean isOtherString(int tag) {
    for (int other : Fields.OTHER_STRINGS) {
      if (tag == other) {
        return true;
      }
    }
    return false;
  }

  /** Merges one Timestamp occurrence into {seconds, nanos}, as a parser would. */
  private static long[] readTimestamp(CodedInputStream in, long[] into) throws IOException {
    long[] at = into != null ? into : new long[2];
    int limit = in.pushLimit(in.readRawVarint32());
    for (int tag = in.readTag(); tag != 0; tag = in.readTag()) {
      if (tag == Fields.SECONDS) {
        at[0] = in.readInt64();
      } else if (tag == Fields.NANOS) {
        at[1] = in.readInt32();
      } else if (!in.skipField(tag)) {
        throw new IOException("end-group tag outside a group");
      }
    }
    in.popLimit(limit);
    return at;
  }

  private static Descriptor load() {
    FileDescriptorSet set;
    try (InputStream in = TapDecoder.class.getResourceAsStream(DESCRIPTOR_SET)) {
      if (in == null) {
        throw new IllegalStateException(DESCRIPTOR_SET + " is not in the jar");
      }
      set = FileDescriptorSet.parseFrom(in);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    // --include_imports lists every file after the files it imports.
    Map<String, FileDescriptor> built = new HashMap<>();
    try {
      for (FileDescriptorProto file : set.getFileList()) {
        FileDescriptor[] deps = new FileDescriptor[file.getDependencyCount()];
        for (int i = 0; i < deps.length; i++) {
          deps[i] = built.get(file.getDependency(i));
        }
        built.put(file.getName(), FileDescriptor.buildFrom(file, deps));
      }
    } catch (DescriptorValidationException e) {
      throw new IllegalStateException("invalid " + DESCRIPTOR_SET, e);
    }
    for (FileDescriptor file : built.values()) {
      for (Descriptor message : file.getMessageTypes()) {
        if (message.getFullName().equals(MESSAGE)) {
          return message;
        }
      }
    }
    throw new IllegalStateException(MESSAGE + " is not in " + DESCRIPTOR_SET);
  }

  private static int tag(FieldDescriptor field) {
    return (field.getNumber() << 3) | field.getLiteType().getWireType();
  }

  private static FieldDescriptor field(Descriptor message, String name) {
    FieldDescriptor field = message.findFieldByName(name);
    if (field == null) {
      throw new IllegalStateException(message.getFullName() + " has no field " + name);
    }
    return field;
  }
}
